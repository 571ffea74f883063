"""Contract-test Lambda: raises the typed error named in the event."""


class InputValidationError(Exception):
    pass


class StagingError(Exception):
    pass


def handler(event, context):
    kind = event.get("raise")
    if kind == "InputValidationError":
        raise InputValidationError(f"record {event.get('record', 'x')} line 2: bad residue 'J'")
    if kind == "StagingError":
        raise StagingError("copy failed")
    if kind == "KeyError":
        return {}["missing"]
    return {"ok": True}

"""Contract-test Lambda: fails `fail_times` times per key with TransientError, then succeeds."""

_calls: dict[str, int] = {}


class TransientError(Exception):
    pass


def handler(event, context):
    key = event.get("key", "k")
    _calls[key] = _calls.get(key, 0) + 1
    if _calls[key] <= int(event.get("fail_times", 0)):
        raise TransientError(f"attempt {_calls[key]} of {key} failed")
    return {"key": key, "calls": _calls[key]}

"""Contract-test Lambda: sleeps `seconds`."""

import time


def handler(event, context):
    time.sleep(float(event.get("seconds", 0.5)))
    return {"slept": event.get("seconds", 0.5)}

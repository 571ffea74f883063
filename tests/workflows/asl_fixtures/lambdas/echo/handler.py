"""Contract-test Lambda: returns its event and a variable from lambda_env."""

import os


def handler(event, context):
    return {"event": event, "greeting": os.environ.get("GREETING"), "function": context.function_name}

"""Plain, testable functions behind the Lambda handlers (validate, stage, collect, cleanup)."""

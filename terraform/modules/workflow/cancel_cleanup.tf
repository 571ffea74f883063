# Cleanup after a stopped execution. StopExecution (`foldstack cancel`) and a workflow
# timeout end an execution without running its CleanupOnFailure state, so an EventBridge
# rule on this state machine's ABORTED and TIMED_OUT status changes invokes the Cleanup
# Lambda. Its input transformer passes only values that need no escaping: the workflow
# (the Lambda is shared and dispatches on it, foldstack.workflows.dispatch: without it a
# cryoem run's cancel would go to fold's cleanup), the execution name (the run id, plus
# -a<N> for a retry: the Lambda strips it with foldstack.core.runid.run_id_of), the status
# and the stop time (epoch ms; scratch written later belongs to a newer attempt and stays).
# Cleanup keeps finished targets' step outputs for `foldstack retry` and removes the rest
# of the run's scratch.

variable "cleanup_on_stop" {
  description = "Invoke the cleanup Lambda when an execution is ABORTED or TIMED_OUT. null: when the definition itself invokes it ($${lambda_cleanup_arn})."
  type        = bool
  default     = null
}

locals {
  cleanup_on_stop = coalesce(var.cleanup_on_stop, strcontains(file(var.definition_file), "$${lambda_cleanup_arn}"))
  stop_cleanup = {
    statuses = ["ABORTED", "TIMED_OUT"]
    input_paths = {
      name    = "$.detail.name"
      status  = "$.detail.status"
      stopped = "$.detail.stopDate"
    }
    input_template = "{\"workflow\": \"${var.workflow_name}\", \"execution_name\": \"<name>\", \"status\": \"<status>\", \"stopped_at\": <stopped>, \"failed\": true}"
  }
}

resource "aws_cloudwatch_event_rule" "stopped" {
  count       = local.cleanup_on_stop ? 1 : 0
  name        = "${var.name}-stopped"
  description = "Executions of ${var.name} that were stopped or timed out: their Cleanup state never ran"
  event_pattern = jsonencode({
    source        = ["aws.states"]
    "detail-type" = ["Step Functions Execution Status Change"]
    detail = {
      status          = local.stop_cleanup.statuses
      stateMachineArn = [aws_sfn_state_machine.this.arn]
    }
  })
}

resource "aws_cloudwatch_event_target" "cleanup" {
  count = local.cleanup_on_stop ? 1 : 0
  rule  = aws_cloudwatch_event_rule.stopped[0].name
  arn   = var.lambda_arns["cleanup"]

  input_transformer {
    input_paths    = local.stop_cleanup.input_paths
    input_template = local.stop_cleanup.input_template
  }

  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 20
  }
}

resource "aws_lambda_permission" "cleanup_on_stop" {
  count         = local.cleanup_on_stop ? 1 : 0
  statement_id  = "${var.name}-cleanup-on-stop"
  action        = "lambda:InvokeFunction"
  function_name = var.lambda_arns["cleanup"]
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.stopped[0].arn
}

output "stop_cleanup_rule_arn" {
  description = "EventBridge rule that runs Cleanup for ABORTED and TIMED_OUT executions (null when off)."
  value       = local.cleanup_on_stop ? aws_cloudwatch_event_rule.stopped[0].arn : null
}

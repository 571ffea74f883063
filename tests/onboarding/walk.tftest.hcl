# The onboarding walk's plan (tests/onboarding/test_walk.py copies it into the walked
# tree's terraform/envs/dev/tests/): `terraform test` plans the dev environment, as
# `make plan ENV=dev` does, with the mock provider. The toy is in statemachines/workloads.yaml
# only: nothing under terraform/ names it.
mock_provider "aws" {
  source          = "../../tests/mocks"
  override_during = plan
}

run "the_dev_environment_deploys_the_registered_toy" {
  command = plan

  assert {
    condition     = toset(keys(output.state_machine_arns)) == toset(keys(yamldecode(file("../../../statemachines/workloads.yaml")))) && contains(keys(output.state_machine_arns), "toy")
    error_message = "One state machine per workloads.yaml entry, the toy's included."
  }

  assert {
    condition     = toset(keys(module.platform.job_definition_arns.toy)) == toset(["toy_work"])
    error_message = "The toy's job definitions come from its jobs.yaml (toy_work)."
  }

  assert {
    condition     = contains(keys(output.repository_urls), "toy") && contains(keys(module.platform.job_queue_arns), "cpu-spot")
    error_message = "An ECR repository for the toy image; its jobs' queue exists."
  }
}

# The SSM `workflows` map is the config module's (not an output of the environment): the
# platform module planned with the workflows the environment builds from workloads.yaml.
run "clients_find_the_toy_state_machine" {
  command = plan

  module {
    source = "../../modules/platform"
  }

  variables {
    lambda_package_dir = "../../../build/lambdas"
    workflows = {
      for name, w in yamldecode(file("../../../statemachines/workloads.yaml")) : name => {
        definition_file = "../../../statemachines/rendered/${name}.asl.json"
        job_spec_file   = "../../../statemachines/${name}/jobs.yaml"
        submitted_by    = w.submitted_by
      }
    }
  }

  assert {
    condition     = module.config.workflows["toy"] == module.workflow["toy"].state_machine_arn && !contains(keys(module.config.workflows), "refresh_databases")
    error_message = "SSM workflows maps the toy (a client workflow) to its state machine."
  }

  assert {
    condition = (
      module.workflow["toy"].state_machine_name == "foldstack-dev-toy"
      && !strcontains(module.workflow["toy"].definition, "$${")
      && can(jsondecode(module.workflow["toy"].definition))
      && strcontains(module.workflow["toy"].definition, module.batch.job_definition_arns.toy.toy_work)
    )
    error_message = "The toy state machine deploys from its rendered ASL, every placeholder filled, naming its job definition."
  }
}

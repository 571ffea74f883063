"""The toy workload of the onboarding walk (docs/onboarding.md): its request model
(:mod:`.request`), its Lambda tasks (:mod:`.tasks`) and its Batch step (:mod:`.steps`)."""

"""Installing model weights: tiny random demo weights (:mod:`.demo`) and the real
downloads (:mod:`.fetch`). Where they live and how a step finds them is
:mod:`foldstack.steps.weights_layout`."""

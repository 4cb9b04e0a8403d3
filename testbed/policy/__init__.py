"""NetworkPolicy (networking.k8s.io/v1): the model as the API server validates it (model.py) and the pure
evaluator that decides every flow from desired state (evaluate.py). The datapath is the policy installer
(testbed/installers/policy), rendered from the same evaluator's per-node view, so `testbed policy explain`
and `testbed probe --matrix` compare the model with what the kernel does."""

"""The embedded model's judge: an independent face analyser (dlib, in the `eval` extra),
metrics of what a viewer sees, the dev and test pools, and baselines that must fail."""

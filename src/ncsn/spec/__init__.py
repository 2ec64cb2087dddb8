"""The typed contract, torch-free: what a sampler's settings are (:mod:`ncsn.spec.samplers`),
what a model file is (:mod:`ncsn.spec.model`) and the value types and the one error formatter
they share (:mod:`ncsn.spec.values`). YAML configs, model files, CLI flags and the Python API
all read and write these objects; importing them loads pydantic, not torch."""

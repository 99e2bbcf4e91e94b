"""Arm implementations: one module per arm, each `run(config, context) -> ArmResult`."""

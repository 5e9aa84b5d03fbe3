"""Policy file schema, loading and the built-in demo policy."""

from modelshield.policy.demo import DEMO_POLICY, demo_policy
from modelshield.policy.loader import CONFIG_ENV, load_policy, policy_from_mapping, resolve_policy
from modelshield.policy.schema import InputSpec, ModelSpec, Plan, Policy

__all__ = [
    "CONFIG_ENV",
    "DEMO_POLICY",
    "InputSpec",
    "ModelSpec",
    "Plan",
    "Policy",
    "demo_policy",
    "load_policy",
    "policy_from_mapping",
    "resolve_policy",
]

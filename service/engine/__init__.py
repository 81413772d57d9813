"""The rule language: YAML with positions, a whitelisted expression compiler, rulesets."""

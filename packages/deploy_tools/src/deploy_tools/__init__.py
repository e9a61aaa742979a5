"""deploy_tools: local stack, setup-as-code, image and deploy commands."""

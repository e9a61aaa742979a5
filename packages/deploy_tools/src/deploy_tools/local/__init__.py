"""The local use case: the stack (`stack/`), `deploy local`, `stack down`, the demo runs."""

"""The remote use case: `deploy remote` (`service`) and the prefect.yaml steps (`steps`)."""

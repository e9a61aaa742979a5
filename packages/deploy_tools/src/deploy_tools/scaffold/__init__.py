"""`airnub new project` (`create`, from `templates/`) and `airnub remove project` (`cleanup`)."""

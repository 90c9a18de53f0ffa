"""Use cases: the service layer shared by the Lambda handlers and the CLI."""

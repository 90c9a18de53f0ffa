"""DynamoDB adapters built on the low-level boto3 client (see docs/design.md for why)."""

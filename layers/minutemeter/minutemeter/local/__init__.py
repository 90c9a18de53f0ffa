"""Local tools for the demo, the tests and the benchmarks: DynamoDB Local, a sample exporter,
and an independent oracle for what should be billed. Not shipped in the Lambda layer."""

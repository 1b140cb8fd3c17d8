"""Local stand-ins of the SaaS APIs: the embedded default and the test suite's ground truth."""

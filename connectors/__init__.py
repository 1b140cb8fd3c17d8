"""Systems of record: one module per vendor SDK behind the contract in connectors.base."""

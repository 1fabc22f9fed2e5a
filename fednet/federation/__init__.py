"""The federation: wire protocol, client runtime, server flow and Flower apps."""

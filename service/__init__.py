"""FastAPI retrieval service: text and image queries against an index snapshot."""

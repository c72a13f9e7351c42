"""The OpenAPI document of the WMS (`openapi.json`), shipped as package data."""

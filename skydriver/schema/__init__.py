"""The OpenAPI document of skydriver (`openapi.json`), shipped as package data."""

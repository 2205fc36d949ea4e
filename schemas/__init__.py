"""The JSON Schemas of every topic value and the OpenAPI document, installed as the
package `storemon.schemas` (pyproject.toml maps it to this folder) so that an installed
storemon reads them with importlib.resources, wherever it runs from."""

"""Model zoo. Torch-free on import: ``specs`` holds the schemas, ``registry`` the builders."""

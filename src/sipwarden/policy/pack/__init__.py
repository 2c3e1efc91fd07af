"""The built-in rule pack, shipped with sipwarden: TOML files of rules."""

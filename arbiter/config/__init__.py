"""Configuration: the pydantic schema (`schema`) and its model presets (`presets`: the
networks of the grokking papers), loading TOML with `extends` and `--set`
(`loading`), the search-space grammar (`space`), where templates and tiers are found
(`templates`), what a config costs (`estimate`: parameters, FLOPs, memory), the model size
that meets a parameter budget (`budget`), and a template's trials, each validated before
anything starts (`trials`).

Pure data and validation: imports `arbiter.errors` and pydantic, never Ray, torch or any other
layer of Arbiter, so every layer can read a `Config`.
"""

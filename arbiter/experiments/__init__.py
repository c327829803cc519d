"""Where experiments live and what they hold: the storage root and experiment names
(`storage`), the experiment record `arbiter.json` (`record`), and the trials' saved results
(`trials`). Every command reaches an experiment through this package, so another place to keep
experiments (object storage) plugs in here.

May import `config` and `errors`; never Ray (`tune.state` reads Tune's own saved state).
"""

"""exesdb: an event store on ``otp``, ported from ExESDB (Elixir)."""

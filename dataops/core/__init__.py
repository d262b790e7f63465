"""Settings, warehouse connections and digests: what every other room of the library uses."""

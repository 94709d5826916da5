"""The core of privbox: the observation (ClientUpdate, Secret, ThreatModel), its safetensors io,
atomic writes and the registry machinery. It imports nothing from the layers above it
(attacks, defenses, clients, the CLI)."""

"""Identity and secrets: who is calling, and the vault of provider credentials."""

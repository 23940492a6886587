"""A local stand-in for the contact providers (SMS gateway, e-mail API, dialer, letters)."""

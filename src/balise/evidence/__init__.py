"""The evidence vault: receives sealed recordings, keeps them, logs every access, exports."""

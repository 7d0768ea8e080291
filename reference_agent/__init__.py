"""The reference Agent server."""

"""The reference Agent server: thin servicer -> domain (staging, jobs, interpreters, journal) -> processes."""

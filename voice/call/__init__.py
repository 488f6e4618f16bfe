"""The path of one call: the session that hears, answers and speaks (`session`), turn-taking
(`turns`), the reply as it is spoken (`reply`), and what a session needs of its caller's wire
(`transport`, `observer`)."""

"""Rules about English text that the agent, speech synthesis and the server share: what a word
is when words are compared, number words, filler sounds, abbreviations, Markdown marks. One
home each, so that the guardrails, turn-taking, search and scoring cannot drift apart."""

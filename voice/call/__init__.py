"""The path of one call: the session that hears, answers and speaks (`session`), turn-taking
(`turns`), the reply as it is spoken (`reply`) on the clock it is paced by (`clock`), what a
session needs of its caller's wire (`transport`), and who watches the call (`observer`)."""

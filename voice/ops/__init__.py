"""Running the server: what is checked before it starts, and in what order (`startup`), the app
and its routes (`server`), the listening socket (`listener`), each websocket line (`line`), who
may call and how many (`access`, `admission`), the loaded models and their worker processes
(`services`, `workers`), and what operators watch (`metrics`, `readiness`, `logs`)."""

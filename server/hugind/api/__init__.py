"""The HTTP layer: OpenAI wire types, routes, auth, SSE. Knows nothing of llama.cpp."""

"""Wire-format translation: pure functions and stream translators between OpenAI Chat Completions (the
gateway's internal lingua franca) and the Anthropic Messages, OpenAI Responses and Gemini formats."""

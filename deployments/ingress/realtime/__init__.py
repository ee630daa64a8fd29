"""OpenAI's Realtime API (GA protocol) over WebSocket at /v1/realtime: live transcription and voice
conversations, joined on the ingress from the model deployments (Whisper, a chat model, text-to-speech)."""

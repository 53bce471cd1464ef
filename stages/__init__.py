"""Recovery stages on compressed models: fine-tuning (LoRA/QLoRA with peft and the Trainer)."""

"""Built-in mail provider plugins, loaded exactly like third-party ones."""

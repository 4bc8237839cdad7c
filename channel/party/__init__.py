"""A party's side: the one typed client, the keyring and the timeline. It never imports the
courier: it speaks to one only over HTTP."""

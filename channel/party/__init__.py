"""The party's side: what a party runs to write, receive and prove letters. It never imports the
courier."""

"""The rights-holder portal: `tributary run portal`, `tributary portal link <holder>`."""

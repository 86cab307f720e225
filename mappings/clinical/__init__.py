"""Clinical record helpers: the patient record, dates, units, three-valued logic, signs of the disease
and the one table of the resource types the product reads."""

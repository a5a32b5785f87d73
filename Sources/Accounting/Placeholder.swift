public enum AccountingPlaceholder {}

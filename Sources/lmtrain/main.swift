print("lmtrain")

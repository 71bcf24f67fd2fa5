# language: fr
@exigence=SC.MSS/UX.25 @exigence=SC.MSS/UX.28 @exigence=SC.MSS/UX.31
Fonctionnalité: SC.MSS/UX.25, SC.MSS/UX.28, SC.MSS/UX.31 — Messages reçus d'un confrère et d'un patient
  La messagerie du LGC distingue les messages des professionnels de ceux que les patients envoient depuis Mon
  espace santé (SC.MSS/UX.25) ; elle nomme le patient par ses nom et prénom, comme son dossier, et non par le
  matricule INS de son adresse (SC.MSS/UX.31) ; elle cache la plomberie XDM — l'archive IHE_XDM.zip — derrière
  une présentation lisible (SC.MSS/UX.28).

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  Scénario: Un confrère et un patient écrivent au médecin
    Quand le médecin ouvre le dossier de "DE VINCI"
    Alors l'identité du patient est récupérée
    Étant donné un confrère et le patient d'INS "114026322090185" ont écrit à "kit.doc0036624@medecin.mssante.fr" par MSSanté, le confrère avec un document
    Quand le médecin relève sa messagerie
    Alors les deux messages sont listés, celui du patient marqué « patient », celui du confrère « professionnel »
    Et le patient est nommé comme dans son dossier, pas par le matricule INS de son adresse
    Et la plomberie XDM reste cachée : ni l'archive IHE_XDM.zip ni l'objet technique ne sont montrés
    Et la messagerie a été relevée par IMAP avec le jeton Pro Santé Connect
